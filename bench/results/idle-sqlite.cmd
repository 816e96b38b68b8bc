chat-bench idle --addr 127.0.0.1:43884 --users 8000 --duration 10 --login-concurrency 64 --server-pid 32763 --label sqlite
