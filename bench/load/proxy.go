package main

import (
	"errors"
	"io"
	"net"
)

// proxyCmd is the smallest TCP proxy Go allows: accept, dial the backend,
// io.Copy both ways (splice(2) on Linux), close. It does nothing moat
// would not also do, so it is the floor against which moat's own white
// path is measured: what moat adds beyond it is moat's logic, what it adds
// over a direct connection is the cost of a hop.
func proxyCmd(args []string) error {
	fs := newFlags("proxy")
	listen := fs.String("listen", "127.0.0.1:10052", "address to accept on")
	backend := fs.String("backend", "", "address to connect to")
	fs.Parse(args)
	if *backend == "" {
		return errors.New("-backend is required")
	}
	for _, a := range []string{*listen, *backend} {
		if err := checkLoopback(a); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			b, err := net.Dial("tcp", *backend)
			if err != nil {
				return
			}
			defer b.Close()
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				io.Copy(dst, src)
				dst.(*net.TCPConn).CloseWrite()
				done <- struct{}{}
			}
			go pipe(b, c)
			go pipe(c, b)
			<-done
			<-done
		}()
	}
}
