chat-bench login-storm --addr 127.0.0.1:19963 --users 2000 --login-concurrency 128 --server-pid 29772 --label mariadb
