chat-bench one --addr 127.0.0.1:15509 --users 1000 --sweep 5000,10000,15000,20000,25000,30000,35000,40000,45000,50000,55000 --duration 10 --server-pid 11477 --label new
