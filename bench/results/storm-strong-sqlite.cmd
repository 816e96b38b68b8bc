chat-bench login-storm --addr 127.0.0.1:26691 --users 500 --login-concurrency 128 --server-pid 2906 --label sqlite-default-argon2
