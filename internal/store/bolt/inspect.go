package bolt

import (
	"errors"
	"fmt"
	"os"
	"time"

	bbolt "go.etcd.io/bbolt"

	"moat/internal/store"
)

// Summary is what Inspect finds in a store file.
type Summary struct {
	Hosts    map[store.Class]int // live entries per class
	Triplets int                 // greylist triplets, expired ones included
	Traps    int
}

// Inspect opens the store file at path read-only, beside a moat that may
// be starting, and counts what it holds: "moat check" uses it when no
// moat runs. Unlike Open it writes nothing (no buckets for a new file, no
// purge of expired entries) and refuses a file that does not exist. Every
// host entry is decoded, so a damaged file shows.
func Inspect(path string) (sum Summary, err error) {
	if _, err := os.Stat(path); err != nil {
		return sum, fmt.Errorf("store: %w", err)
	}
	db, err := openDB(path, true)
	if err != nil {
		return sum, err
	}
	defer closeQuietly(db)
	sum.Hosts = map[store.Class]int{}
	now := toNanos(time.Now())
	err = db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return invalidFile(path, errors.New("it has no moat format version"))
		}
		if err := checkVersion(path, meta); err != nil {
			return err
		}
		if b := tx.Bucket(bucketHosts); b != nil {
			if err := b.ForEach(func(k, v []byte) error {
				h, err := decodeHost(v)
				if err != nil {
					return invalidFile(path, fmt.Errorf("hosts: %w", err))
				}
				if live(h.expires, now) {
					sum.Hosts[h.class]++
				}
				return nil
			}); err != nil {
				return err
			}
		}
		if b := tx.Bucket(bucketTriplets); b != nil {
			sum.Triplets = b.Stats().KeyN
		}
		if b := tx.Bucket(bucketTraps); b != nil {
			sum.Traps = b.Stats().KeyN
		}
		return nil
	})
	return sum, err
}
