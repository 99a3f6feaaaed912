// Command rssprobe calls relocs.Release and prints what it released and
// the process's file-backed RSS before and after, for relocs_test.go.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/buildd-agent/buildd-agent/internal/relocs"
)

func rssFileKB() string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "?"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "RssFile:"); ok {
			return strings.TrimSuffix(strings.TrimSpace(v), " kB")
		}
	}
	return "?"
}

func main() {
	before := rssFileKB()
	n, err := relocs.Release()
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println(n, before, rssFileKB())
}
