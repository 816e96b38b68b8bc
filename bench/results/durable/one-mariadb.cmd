chat-bench one --addr 127.0.0.1:12910 --users 1000 --sweep 10000 --duration 10 --server-pid 20670 --label mariadb
