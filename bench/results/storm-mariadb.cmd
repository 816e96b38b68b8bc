chat-bench login-storm --addr 127.0.0.1:25467 --users 2000 --login-concurrency 128 --server-pid 27692 --label mariadb
