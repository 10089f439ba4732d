// Package workpool runs short functions on goroutines it keeps for the
// next one.
//
// A new goroutine starts on a small stack and grows it by copying, walking
// every frame, each time a call goes deeper than the stack has room for.
// The stack's short jobs (draining a guest endpoint into a host socket,
// setting up a connection) call deep into gVisor, so on fresh goroutines
// they paid for two or three such copies each time: runtime.morestack
// was a fifth of the daemon's user CPU in a connection-rate run. A worker
// that finishes a job waits for the next one with the stack it has.
package workpool

import "sync"

// Pool runs functions on its workers. The caller of Go owns what the
// function does, as with a go statement (a relay waits for its pump, the
// stack for its connections); the pool owns only the workers' waiting
// between functions. The zero value is not usable; call New.
type Pool struct {
	jobs    chan func() // unbuffered: a send succeeds only to a waiting worker
	stop    chan struct{}
	maxIdle int

	mu      sync.Mutex
	idle    int // workers waiting for a job
	started int // workers ever started
	stopped bool
	wg      sync.WaitGroup
}

// New returns a pool that keeps at most maxIdle workers waiting; a worker
// that finishes a job while that many wait ends.
func New(maxIdle int) *Pool {
	return &Pool{jobs: make(chan func()), stop: make(chan struct{}), maxIdle: maxIdle}
}

// Go runs f on a waiting worker, or on a new one when none waits. It never
// blocks. After Close, f runs on a goroutine of its own.
func (p *Pool) Go(f func()) {
	select {
	case p.jobs <- f:
		return
	default:
	}
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		go f()
		return
	}
	p.wg.Add(1)
	p.started++
	p.mu.Unlock()
	go p.work(f)
}

type poolStats struct{ idle, started int }

func (p *Pool) stats() poolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return poolStats{p.idle, p.started}
}

// work runs f, then the jobs handed to it while it waits, until the pool
// has enough waiting workers or is closed.
func (p *Pool) work(f func()) {
	defer p.wg.Done()
	for {
		f()
		p.mu.Lock()
		if p.stopped || p.idle >= p.maxIdle {
			p.mu.Unlock()
			return
		}
		p.idle++
		p.mu.Unlock()
		select {
		case f = <-p.jobs:
		case <-p.stop:
			f = nil
		}
		p.mu.Lock()
		p.idle--
		p.mu.Unlock()
		if f == nil {
			return
		}
	}
}

// Close ends the waiting workers and waits for the others to finish their
// jobs.
func (p *Pool) Close() {
	p.mu.Lock()
	if !p.stopped {
		p.stopped = true
		close(p.stop)
	}
	p.mu.Unlock()
	p.wg.Wait()
}
