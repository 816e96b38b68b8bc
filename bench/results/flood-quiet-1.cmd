chat-bench one --addr 127.0.0.1:29713 --users 1000 --rate 10000 --duration 10 --server-pid 5933 --label quiet
