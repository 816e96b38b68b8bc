chat-bench one --addr 127.0.0.1:17800,127.0.0.1:32069 --cross-node --users 1000 --sweep 2500,5000,7500,10000,12500,15000,20000,25000,30000 --duration 10 --server-pid 31797,31810 --label cross-node
