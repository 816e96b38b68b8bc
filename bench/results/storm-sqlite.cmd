chat-bench login-storm --addr 127.0.0.1:10968 --users 8000 --login-concurrency 128 --server-pid 20934 --label sqlite
