chat-bench idle --transport ws --addr 127.0.0.1:23465 --users 8000 --duration 10 --login-concurrency 64 --server-pid PID --label idle-ws-3
