chat-bench login-storm --addr 127.0.0.1:42831 --users 2000 --login-concurrency 128 --server-pid 1879 --label mariadb
