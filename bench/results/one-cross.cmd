chat-bench one --addr 127.0.0.1:14628,127.0.0.1:14994 --cross-node --users 1000 --sweep 2500,5000,7500,10000,12500,15000,20000,25000,30000 --duration 10 --server-pid 32216,32237 --label cross-node
