chat-bench idle --addr 127.0.0.1:13158 --users 8000 --duration 10 --login-concurrency 64 --server-pid 12278 --label sqlite
