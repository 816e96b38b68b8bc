chat-bench one --addr 127.0.0.1:29449 --users 1000 --sweep 10000,20000,25000 --duration 10 --server-pid 3828 --label mariadb
