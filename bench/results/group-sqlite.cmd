chat-bench group --addr 127.0.0.1:11282 --users 1000 --group-size 20 --sweep 1000,2000,2632,3000,3500,4000,5000 --duration 10 --server-pid 28007 --label sqlite
