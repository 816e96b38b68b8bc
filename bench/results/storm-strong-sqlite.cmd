chat-bench login-storm --addr 127.0.0.1:50347 --users 500 --login-concurrency 128 --server-pid 26783 --label sqlite-default-argon2
