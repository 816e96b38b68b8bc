chat-bench login-storm --addr 127.0.0.1:20735 --users 500 --login-concurrency 128 --server-pid 17691 --label sqlite-default-argon2
