chat-bench login-storm --addr 127.0.0.1:29449 --users 2000 --login-concurrency 128 --server-pid 3828 --label mariadb
