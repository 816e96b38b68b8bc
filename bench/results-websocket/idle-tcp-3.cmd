chat-bench idle --transport tcp --addr 127.0.0.1:19177 --users 8000 --duration 10 --login-concurrency 64 --server-pid PID --label idle-tcp-3
