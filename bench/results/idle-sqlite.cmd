chat-bench idle --addr 127.0.0.1:33453 --users 8000 --duration 10 --login-concurrency 64 --server-pid 21046 --label sqlite
