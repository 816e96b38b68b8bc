chat-bench one --addr 127.0.0.1:14027 --users 1000 --sweep 10000,25000,40000,50000 --duration 10 --server-pid 30294 --label mariadb
