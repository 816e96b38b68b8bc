chat-bench one --addr 127.0.0.1:47647,127.0.0.1:30277 --cross-node --users 1000 --sweep 2500,5000,7500,10000,12500,15000 --duration 10 --server-pid 6381,6406 --label cross-node
