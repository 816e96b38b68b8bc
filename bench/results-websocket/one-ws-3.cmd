chat-bench one --transport ws --addr 127.0.0.1:31614 --users 1000 --sweep 2000,3000,4000,5000,6000,7000,8000,9000,10000,12000,14000 --sweep-all --duration 5 --server-pid PID --label one-ws-3
