// Module tools pins the build tools of slirp, apart from the main module so
// that they add nothing to its go.mod: go-md2man turns docs/man/*.1.md into
// man pages (make man runs `go -C tools tool go-md2man`).
module github.com/slirp-dev/slirp/tools

go 1.26.0

tool github.com/cpuguy83/go-md2man/v2

require (
	github.com/cpuguy83/go-md2man/v2 v2.0.7 // indirect
	github.com/russross/blackfriday/v2 v2.1.0 // indirect
)
