chat-bench idle --addr 127.0.0.1:19906 --users 8000 --duration 10 --login-concurrency 64 --server-pid 12802 --label sqlite
