chat-bench login-storm --addr 127.0.0.1:14027 --users 2000 --login-concurrency 128 --server-pid 30294 --label mariadb
