package rootfs

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// IDMap is one range of a user namespace's uid or gid map: Size ids from
// NSID inside the namespace are HostID... on the host.
type IDMap struct {
	HostID, NSID, Size uint32
}

// IDMapping is the uid and gid maps of a user namespace.
type IDMapping struct {
	UIDs, GIDs []IDMap
}

// MapToHost maps a namespace id to the host.
func MapToHost(m []IDMap, id uint32) (uint32, bool) {
	for _, r := range m {
		if id >= r.NSID && uint64(id) < uint64(r.NSID)+uint64(r.Size) {
			return r.HostID + (id - r.NSID), true
		}
	}
	return 0, false
}

// MapFromHost maps a host id into the namespace.
func MapFromHost(m []IDMap, id uint32) (uint32, bool) {
	for _, r := range m {
		if id >= r.HostID && uint64(id) < uint64(r.HostID)+uint64(r.Size) {
			return r.NSID + (id - r.HostID), true
		}
	}
	return 0, false
}

// Identity reports whether the mapping changes nothing (nil maps are the
// identity: a privileged target).
func (m IDMapping) Identity() bool {
	for _, l := range [][]IDMap{m.UIDs, m.GIDs} {
		for _, r := range l {
			if r.HostID != r.NSID {
				return false
			}
		}
	}
	return true
}

// UID maps a namespace uid to the host (identity when no map is set).
func (m IDMapping) UID(id uint32) (uint32, bool) {
	if m.UIDs == nil {
		return id, true
	}
	return MapToHost(m.UIDs, id)
}

// GID maps a namespace gid to the host (identity when no map is set).
func (m IDMapping) GID(id uint32) (uint32, bool) {
	if m.GIDs == nil {
		return id, true
	}
	return MapToHost(m.GIDs, id)
}

// validate checks that ranges are non-empty and overlap neither inside nor
// on the host, as the kernel requires of a uid_map.
func validateIDMap(m []IDMap) error {
	for i, a := range m {
		if a.Size == 0 {
			return fmt.Errorf("empty id range %d", i)
		}
		if uint64(a.NSID)+uint64(a.Size) > math.MaxUint32+1 || uint64(a.HostID)+uint64(a.Size) > math.MaxUint32+1 {
			return fmt.Errorf("id range %d:%d:%d overflows", a.NSID, a.HostID, a.Size)
		}
		for _, b := range m[:i] {
			if overlap(a.NSID, a.Size, b.NSID, b.Size) || overlap(a.HostID, a.Size, b.HostID, b.Size) {
				return fmt.Errorf("id ranges %d:%d:%d and %d:%d:%d overlap", a.NSID, a.HostID, a.Size, b.NSID, b.HostID, b.Size)
			}
		}
	}
	return nil
}

func overlap(a, an, b, bn uint32) bool {
	return uint64(a) < uint64(b)+uint64(bn) && uint64(b) < uint64(a)+uint64(an)
}

// ParseIDMapFile parses a /proc/PID/uid_map-style map: lines of "nsid hostid
// size" separated by blanks.
func ParseIDMapFile(r io.Reader) ([]IDMap, error) {
	var m []IDMap
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("cannot parse id map line %d %q: want \"nsid hostid size\"", line, sc.Text())
		}
		var v [3]uint32
		for i, s := range f {
			n, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("cannot parse id map line %d %q: %w", line, sc.Text(), err)
			}
			v[i] = uint32(n)
		}
		m = append(m, IDMap{NSID: v[0], HostID: v[1], Size: v[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cannot read id map: %w", err)
	}
	if err := validateIDMap(m); err != nil {
		return nil, fmt.Errorf("invalid id map: %w", err)
	}
	return m, nil
}

// ParseSubID parses /etc/subuid or /etc/subgid ("name:start:count" lines)
// and returns the ranges of user (a name or a numeric uid) laid out one
// after another from namespace id 0, the way newuidmap is usually asked to
// map them. Lines starting with '#' are comments.
func ParseSubID(r io.Reader, user string) ([]IDMap, error) {
	var m []IDMap
	var next uint64
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		f := strings.Split(t, ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("cannot parse subordinate id line %d %q: want \"name:start:count\"", line, t)
		}
		if f[0] != user {
			continue
		}
		start, err := strconv.ParseUint(f[1], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("cannot parse subordinate id line %d %q: %w", line, t, err)
		}
		count, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("cannot parse subordinate id line %d %q: %w", line, t, err)
		}
		if count == 0 {
			continue
		}
		if next+count > math.MaxUint32+1 {
			return nil, fmt.Errorf("subordinate ids of %q exceed the id space", user)
		}
		m = append(m, IDMap{HostID: uint32(start), NSID: uint32(next), Size: uint32(count)})
		next += count
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cannot read subordinate ids: %w", err)
	}
	if err := validateIDMap(m); err != nil {
		return nil, fmt.Errorf("invalid subordinate ids of %q: %w", user, err)
	}
	return m, nil
}

// FormatIDMap renders m for /proc/PID/uid_map.
func FormatIDMap(m []IDMap) string {
	var b strings.Builder
	for _, r := range m {
		fmt.Fprintf(&b, "%d %d %d\n", r.NSID, r.HostID, r.Size)
	}
	return b.String()
}
