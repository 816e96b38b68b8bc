chat-bench idle --addr 127.0.0.1:35220 --users 8000 --duration 10 --login-concurrency 64 --server-pid 2712 --label sqlite
