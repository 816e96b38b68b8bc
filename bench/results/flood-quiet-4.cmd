chat-bench one --addr 127.0.0.1:22931 --users 1000 --rate 10000 --duration 10 --server-pid 6905 --label quiet
