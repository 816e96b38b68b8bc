chat-bench login-storm --addr 127.0.0.1:42105 --users 2000 --login-concurrency 128 --server-pid 19111 --label mariadb
