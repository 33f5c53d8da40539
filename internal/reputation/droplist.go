package reputation

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
)

// DropList holds imported network lists in the format of Spamhaus DROP
// and its kin: one CIDR per line, optionally followed by "; reference",
// with ';' starting comments. Every network on it is black. The lists are
// static: they are read at start and again by Reload (on SIGHUP and every
// ten minutes), and a list that fails to read keeps its last good copy.
type DropList struct {
	files []string
	idx   atomic.Pointer[dropIndex]
}

// dropIndex finds the most specific listed network of an address with one
// map lookup per prefix length in use (at most 33 or 129).
type dropIndex struct {
	bits []int // prefix lengths in use, longest first
	nets map[netip.Prefix]dropEntry
	n    int
}

type dropEntry struct {
	file, ref string
}

// LoadDrop reads the files. An error names the file and line.
func LoadDrop(files ...string) (*DropList, error) {
	d := &DropList{files: files}
	if err := d.Reload(); err != nil {
		return nil, err
	}
	return d, nil
}

// Reload reads the files again. On error the old lists stay in force.
func (d *DropList) Reload() error {
	idx := &dropIndex{nets: map[netip.Prefix]dropEntry{}}
	seen := map[int]bool{}
	for _, path := range d.files {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("reputation: drop list: %w", err)
		}
		err = parseDrop(f, path, idx, seen)
		f.Close()
		if err != nil {
			return err
		}
	}
	for b := 128; b >= 0; b-- {
		if seen[b] {
			idx.bits = append(idx.bits, b)
		}
	}
	d.idx.Store(idx)
	return nil
}

func parseDrop(r io.Reader, path string, idx *dropIndex, seen map[int]bool) error {
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text, ref, _ := strings.Cut(sc.Text(), ";")
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		p, err := netip.ParsePrefix(text)
		if err != nil {
			a, err2 := netip.ParseAddr(text)
			if err2 != nil {
				return fmt.Errorf("reputation: drop list %s:%d: %q is not a CIDR", path, line, text)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		p = p.Masked()
		idx.nets[p] = dropEntry{file: path, ref: strings.TrimSpace(ref)}
		seen[p.Bits()] = true
		idx.n++
	}
	return sc.Err()
}

// Len is the number of listed networks.
func (d *DropList) Len() int {
	if d == nil {
		return 0
	}
	return d.idx.Load().n
}

// Lookup returns the most specific listed network holding addr and the
// reason it is listed ("drop list FILE: SBL123").
func (d *DropList) Lookup(addr netip.Addr) (netip.Prefix, string, bool) {
	if d == nil {
		return netip.Prefix{}, "", false
	}
	addr = addr.Unmap()
	idx := d.idx.Load()
	for _, b := range idx.bits {
		if b > addr.BitLen() {
			continue
		}
		p, err := addr.Prefix(b)
		if err != nil {
			continue
		}
		if e, ok := idx.nets[p]; ok {
			reason := "drop list " + filepath.Base(e.file) + ": " + p.String()
			if e.ref != "" {
				reason += " " + e.ref
			}
			return p, reason, true
		}
	}
	return netip.Prefix{}, "", false
}

// Overlaps reports whether any listed network shares an address with p.
// It reads every listed network, for the rare question about a whole
// network (is every address of it white?), never per connection.
func (d *DropList) Overlaps(p netip.Prefix) bool {
	if d == nil {
		return false
	}
	for n := range d.idx.Load().nets {
		if n.Overlaps(p) {
			return true
		}
	}
	return false
}
