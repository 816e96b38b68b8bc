chat-bench login-storm --addr 127.0.0.1:25796 --users 2000 --login-concurrency 128 --server-pid 6167 --label mariadb
