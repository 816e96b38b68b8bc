chat-bench one --addr 127.0.0.1:14051 --users 1000 --sweep 10000 --duration 10 --server-pid 5020 --label mariadb
