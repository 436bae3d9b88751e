module gload

go 1.19
