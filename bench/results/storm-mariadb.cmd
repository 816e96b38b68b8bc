chat-bench login-storm --addr 127.0.0.1:34913 --users 2000 --login-concurrency 128 --server-pid 16968 --label mariadb
