chat-bench login-storm --addr 127.0.0.1:49867 --users 500 --login-concurrency 128 --server-pid 1076 --label sqlite-default-argon2
