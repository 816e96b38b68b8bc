chat-bench one --addr 127.0.0.1:46269 --users 1000 --rate 10000 --duration 10 --server-pid 19504 --label tmpfs-quiet
