chat-bench login-storm --addr 127.0.0.1:12804 --users 500 --login-concurrency 128 --server-pid 29507 --label sqlite-default-argon2
