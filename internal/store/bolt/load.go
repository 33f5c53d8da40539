package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime/debug"

	bbolt "go.etcd.io/bbolt"
)

// invalidFile is the one answer to a damaged store file: what is wrong
// with it, and what the operator does next.
func invalidFile(path string, cause error) error {
	return fmt.Errorf("store: open %s: file is not a valid moat store (%v): move it aside and start again, or restore a backup with \"moat import\"", path, cause)
}

// openDB opens the bbolt file. bbolt panics on some damaged files instead of
// returning an error; the recover turns that into the same advice as any
// other damage. A truncated file is worse: bbolt reads pages past its end
// through the mmap, which is a SIGBUS, a fatal error that recover cannot
// see unless SetPanicOnFault makes it a panic (that is what it is for).
func openDB(path string, readOnly bool) (db *bbolt.DB, err error) {
	// bbolt initialises a 0-byte file as a new database. For moat that
	// would be a new, empty store over a file that was damaged (a full
	// disk, a botched copy), silently dropping every operator entry: only
	// an absent file makes a new store.
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
		return nil, invalidFile(path, errors.New("it is empty"))
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, invalidFile(path, fmt.Errorf("%v", r))
		}
	}()
	db, err = bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:  lockTimeout,
		ReadOnly: readOnly,
		// The map freelist stays fast when many triplets expire and free
		// pages all over the file.
		FreelistType: bbolt.FreelistMapType,
	})
	if err == nil {
		return db, nil
	}
	var pe *fs.PathError
	switch {
	case errors.Is(err, bbolt.ErrTimeout):
		return nil, fmt.Errorf("store: open %s: another moat process holds it (no lock after %v): stop that process, or give this one its own data_dir", path, lockTimeout)
	case errors.As(err, &pe):
		// Permissions, a missing directory, a full disk: not the file's fault.
		return nil, fmt.Errorf("store: open %s: %w", path, pe.Err)
	}
	return nil, invalidFile(path, err)
}

func closeQuietly(db *bbolt.DB) {
	defer func() { _ = recover() }()
	_ = db.Close()
}

// load checks the format version, creating the buckets of a new file, and
// reads every entry into memory. Entries already expired are left out and
// marked dirty, so the first commit deletes them from disk.
func (s *Store) load() (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true)) // a truncated file: see openDB
	defer func() {
		if r := recover(); r != nil {
			err = invalidFile(s.path, fmt.Errorf("%v", r))
		}
	}()
	if err := s.db.Update(s.initFile); err != nil {
		return err
	}
	now := s.now()
	return s.db.View(func(tx *bbolt.Tx) error {
		var err error
		bad := func(what string, e error) error {
			return invalidFile(s.path, fmt.Errorf("%s: %w", what, e))
		}
		err = tx.Bucket(bucketHosts).ForEach(func(k, v []byte) error {
			p, err := decodeHostKey(k)
			if err != nil {
				return bad("hosts", err)
			}
			h, err := decodeHost(v)
			if err != nil {
				return bad("host "+p.String(), err)
			}
			if !live(h.expires, now) {
				s.hostDirty[p] = struct{}{}
				return nil
			}
			if _, ok := s.hosts[p]; !ok {
				s.addNet(p)
			}
			s.hosts[p] = h
			return nil
		})
		if err != nil {
			return err
		}

		tb := tx.Bucket(bucketTriplets)
		err = tb.ForEach(func(k, v []byte) error {
			if len(k) != len(tkey{}) {
				return bad("triplets", errFormat)
			}
			t, err := decodeTriplet(v)
			if err != nil {
				return bad("triplets", err)
			}
			key := tkey(k)
			sh := &s.shards[key[0]%nShards]
			if !live(t.expires, now) {
				sh.dirty[key] = struct{}{}
				return nil
			}
			sh.m[key] = t
			return nil
		})
		if err != nil {
			return err
		}

		err = tx.Bucket(bucketTraps).ForEach(func(k, _ []byte) error {
			s.traps[string(k)] = struct{}{}
			return nil
		})
		if err != nil {
			return err
		}

		err = tx.Bucket(bucketCounters).ForEach(func(k, v []byte) error {
			n, err := decodeCounter(v)
			if err != nil {
				return bad("counter "+string(k), err)
			}
			s.counters[string(k)] = n
			return nil
		})
		if err != nil {
			return err
		}

		err = tx.Bucket(bucketTallies).ForEach(func(k, v []byte) error {
			t, err := decodeTally(v)
			if err != nil {
				return bad("tally "+string(k), err)
			}
			if !liveTally(t, now) {
				s.tallyDirty[string(k)] = struct{}{}
				return nil
			}
			s.tallies[string(k)] = t
			return nil
		})
		if err != nil {
			return err
		}

		rb := tx.Bucket(bucketRecords)
		return rb.ForEachBucket(func(kindb []byte) error {
			kind := string(kindb)
			m := make(map[string]record)
			err := rb.Bucket(kindb).ForEach(func(k, v []byte) error {
				r, err := decodeRecord(v)
				if err != nil {
					return bad("records "+kind, err)
				}
				if !live(r.expires, now) {
					s.recDirty[recKey{kind, string(k)}] = struct{}{}
					return nil
				}
				m[string(k)] = r
				return nil
			})
			if len(m) > 0 {
				s.records[kind] = m
			}
			return err
		})
	})
}

// checkVersion says whether the file at path, whose meta bucket is meta,
// is in the format this moat reads.
func checkVersion(path string, meta *bbolt.Bucket) error {
	v := meta.Get(keyVersion)
	if len(v) != 4 {
		return invalidFile(path, errors.New("its format version is unreadable"))
	}
	if ver := binary.BigEndian.Uint32(v); ver != formatVersion {
		return fmt.Errorf("store: open %s: format version %d, this moat reads version %d: run the moat that wrote it, or move the file aside and restore with \"moat import\"", path, ver, formatVersion)
	}
	return nil
}

func (s *Store) initFile(tx *bbolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		// A file with buckets but no meta is another program's bbolt
		// file: leave it alone.
		if k, _ := tx.Cursor().First(); k != nil {
			return invalidFile(s.path, errors.New("it has no moat format version"))
		}
		for _, b := range allBuckets {
			if _, err := tx.CreateBucket(b); err != nil {
				return fmt.Errorf("store: create %s: %w", s.path, err)
			}
		}
		return tx.Bucket(bucketMeta).Put(keyVersion, binary.BigEndian.AppendUint32(nil, formatVersion))
	}
	if err := checkVersion(s.path, meta); err != nil {
		return err
	}
	for _, b := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return fmt.Errorf("store: open %s: %w", s.path, err)
		}
	}
	return nil
}
