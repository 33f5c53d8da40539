package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"

	"moat/internal/store"
	"moat/internal/store/bolt"
)

// fillCmd writes n new triplets into the bolt store at path through the
// store's own API, as the greylist does, and reports the sustained rate
// including the final commit. The file is what "load startup" then opens.
func fillCmd(args []string) error {
	fs := newFlags("fill")
	path := fs.String("db", "", "store file to create (data_dir/moat.db); must not exist")
	n := fs.Int("n", 1_000_000, "triplets")
	fs.Parse(args)
	if *path == "" {
		return errors.New("-db is required")
	}
	if _, err := os.Stat(*path); err == nil {
		return fmt.Errorf("%s exists: fill writes a fresh store", *path)
	}
	s, err := bolt.Open(*path, bolt.Options{})
	if err != nil {
		return err
	}
	now := time.Now()
	a := store.Attempt{First: now, Last: now, Count: 1, Expires: now.Add(24 * time.Hour)}
	ids := make([]store.TripletID, *n)
	for i := range ids {
		rand.Read(ids[i][:])
	}
	t0 := time.Now()
	for i, id := range ids {
		if err := s.PutTripletID(id, a); err != nil {
			return err
		}
		if i%100_000 == 99_999 {
			fmt.Printf("%8d triplets, %.0f/s\n", i+1, float64(i+1)/time.Since(t0).Seconds())
		}
	}
	if err := s.Flush(context.Background()); err != nil {
		return err
	}
	el := time.Since(t0)
	if err := s.Close(); err != nil {
		return err
	}
	st, _ := os.Stat(*path)
	fmt.Printf("persisted %d new triplets in %s: %.0f/s sustained (target >= 20000/s: %.1fx); file %d MB\n",
		*n, el.Round(time.Millisecond), float64(*n)/el.Seconds(), float64(*n)/el.Seconds()/20000, st.Size()>>20)
	return nil
}

// startupCmd starts a command (moat run), times how long it takes until
// addr accepts a connection, then reports its RSS and stops it.
func startupCmd(args []string) error {
	fs := newFlags("startup")
	addr := fs.String("addr", "127.0.0.1:2525", "address the command listens on")
	after := fs.Duration("after", 2*time.Second, "how long after the first accept to read VmRSS")
	fs.Parse(args)
	if fs.NArg() == 0 {
		return errors.New("usage: load startup [-addr A] -- command args...")
	}
	if err := checkLoopback(*addr); err != nil {
		return err
	}
	if c, err := net.Dial("tcp", *addr); err == nil {
		c.Close()
		return fmt.Errorf("%s already accepts connections: stop what listens there first", *addr)
	}
	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	for {
		c, err := net.DialTimeout("tcp", *addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Since(t0) > time.Minute {
			return fmt.Errorf("%s did not accept within a minute: %w", *addr, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	up := time.Since(t0)
	time.Sleep(*after)
	var kb [3]int64
	var err error
	for i, f := range []string{"VmRSS", "RssAnon", "RssFile"} {
		if kb[i], err = procStatus(cmd.Process.Pid, f); err != nil {
			return err
		}
	}
	// RssFile is the store file's pages that bbolt's mmap touched while
	// loading: page cache, shared and dropped first under pressure.
	// RssAnon is the process's own memory: heap, stacks, runtime.
	fmt.Printf("accepting after %s (target <= 2s: %.2fx); %s later: VmRSS %d kB = RssAnon %d kB + RssFile %d kB (+ shmem)\n",
		up.Round(time.Millisecond), up.Seconds()/2, *after, kb[0], kb[1], kb[2])
	fmt.Printf("RESULT startup ms=%d rss_kb=%d anon_kb=%d file_kb=%d\n", up.Milliseconds(), kb[0], kb[1], kb[2])
	return nil
}
