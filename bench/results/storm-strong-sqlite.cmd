chat-bench login-storm --addr 127.0.0.1:22120 --users 500 --login-concurrency 128 --server-pid 15795 --label sqlite-default-argon2
