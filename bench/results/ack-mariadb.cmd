chat-bench one --ack --addr 127.0.0.1:14027 --users 1000 --sweep 2500,5000,7500,10000,12500,15000,20000 --duration 10 --server-pid 30294 --label ack-mariadb
