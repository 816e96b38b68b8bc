chat-bench login-storm --addr 127.0.0.1:11901 --users 500 --login-concurrency 128 --server-pid 28968 --label sqlite-default-argon2
