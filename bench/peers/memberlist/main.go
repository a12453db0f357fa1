// memberlist_peer: hashicorp/memberlist (Debian's 0.2.2) doing what ferry's
// membership benchmark does, in the same run: N members on 127.0.0.1 with
// DefaultLANConfig, joined through the first; once all see all, one member
// stops without leaving and we time until every other member reports it gone.
//
// Build (GOPATH mode, Debian packages golang-go and
// golang-github-hashicorp-memberlist-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o memberlist_peer main.go
//
// Usage: memberlist_peer -n 100 -trials 3
// Prints one JSON object on stdout: {"n":100,"detect_s":[...],"join_s":[...]}.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io/ioutil"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// gone records, per observer, when it learned that the victim was gone.
type gone struct {
	mu     sync.Mutex
	victim string
	seen   map[string]time.Time
	self   string
}

type events struct {
	g    *gone
	self string
}

func (e *events) NotifyJoin(*memberlist.Node)   {}
func (e *events) NotifyUpdate(*memberlist.Node) {}
func (e *events) NotifyLeave(n *memberlist.Node) {
	e.g.mu.Lock()
	defer e.g.mu.Unlock()
	if n.Name == e.g.victim {
		if _, ok := e.g.seen[e.self]; !ok {
			e.g.seen[e.self] = time.Now()
		}
	}
}

func waitFor(deadline time.Duration, cond func() bool) bool {
	end := time.Now().Add(deadline)
	for time.Now().Before(end) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

// trial returns (join seconds, detection seconds).
func trial(n, t int) (float64, float64, error) {
	g := &gone{victim: fmt.Sprintf("ml-%d-%d", t, n-1), seen: map[string]time.Time{}}
	list := make([]*memberlist.Memberlist, 0, n)
	defer func() {
		for _, m := range list {
			m.Shutdown()
		}
	}()
	start := time.Now()
	for i := 0; i < n; i++ {
		cfg := memberlist.DefaultLANConfig()
		cfg.Name = fmt.Sprintf("ml-%d-%d", t, i)
		cfg.BindAddr = "127.0.0.1"
		cfg.BindPort = 0
		cfg.LogOutput = ioutil.Discard
		cfg.Events = &events{g: g, self: cfg.Name}
		m, err := memberlist.Create(cfg)
		if err != nil {
			return 0, 0, err
		}
		list = append(list, m)
	}
	seed := fmt.Sprintf("127.0.0.1:%d", list[0].LocalNode().Port)
	for _, m := range list[1:] {
		if _, err := m.Join([]string{seed}); err != nil {
			return 0, 0, err
		}
	}
	if !waitFor(60*time.Second, func() bool {
		for _, m := range list {
			if m.NumMembers() != n {
				return false
			}
		}
		return true
	}) {
		return 0, 0, fmt.Errorf("n=%d did not converge in 60 s", n)
	}
	joined := time.Since(start).Seconds()
	victim := list[n-1]
	list = list[:n-1]
	t0 := time.Now()
	victim.Shutdown() // no Leave: a crash as far as the others can tell
	if !waitFor(120*time.Second, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.seen) == n-1
	}) {
		return joined, 0, fmt.Errorf("n=%d: not every member saw the failure in 120 s", n)
	}
	var last time.Time
	for _, at := range g.seen {
		if at.After(last) {
			last = at
		}
	}
	return joined, last.Sub(t0).Seconds(), nil
}

func main() {
	n := flag.Int("n", 10, "members")
	trials := flag.Int("trials", 3, "crashes to time, each in a fresh cluster")
	flag.Parse()
	out := struct {
		N       int       `json:"n"`
		Detect  []float64 `json:"detect_s"`
		Join    []float64 `json:"join_s"`
		Version string    `json:"memberlist"`
		Error   string    `json:"error,omitempty"`
	}{N: *n, Version: "0.2.2 (Debian), DefaultLANConfig"}
	for t := 0; t < *trials; t++ {
		j, d, err := trial(*n, t)
		if err != nil {
			out.Error = err.Error()
			break
		}
		fmt.Fprintf(os.Stderr, "memberlist n=%d trial %d: joined in %.2f s, failure seen by all in %.2f s\n", *n, t, j, d)
		out.Join = append(out.Join, j)
		out.Detect = append(out.Detect, d)
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
