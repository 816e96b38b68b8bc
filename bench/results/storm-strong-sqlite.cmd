chat-bench login-storm --addr 127.0.0.1:26293 --users 500 --login-concurrency 128 --server-pid 5336 --label sqlite-default-argon2
