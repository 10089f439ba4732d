package workpool

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// waitGoroutines waits (bounded) until at most n goroutines run.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, want at most %d", runtime.NumGoroutine(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRunsEveryJob(t *testing.T) {
	p := New(2)
	defer p.Close()
	const n = 1000
	var wg sync.WaitGroup
	wg.Add(n)
	var mu sync.Mutex
	seen := make(map[int]bool)
	for i := range n {
		p.Go(func() {
			defer wg.Done()
			mu.Lock()
			seen[i] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("ran %d distinct jobs, want %d", len(seen), n)
	}
}

// TestReusesWaitingWorker runs jobs one after another: each after the
// first must land on the worker the one before left waiting.
func TestReusesWaitingWorker(t *testing.T) {
	p := New(1)
	defer p.Close()
	for i := range 50 {
		done := make(chan struct{})
		p.Go(func() { close(done) })
		<-done
		// Let the worker get back to waiting before the next job.
		deadline := time.Now().Add(5 * time.Second)
		for p.stats().idle == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("job %d: the worker never went back to waiting", i)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	if got := p.stats().started; got != 1 {
		t.Errorf("50 jobs one after another started %d workers, want 1", got)
	}
}

func TestIdleWorkersBounded(t *testing.T) {
	base := runtime.NumGoroutine()
	p := New(3)
	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(20)
	for range 20 {
		p.Go(func() { defer wg.Done(); <-release })
	}
	close(release)
	wg.Wait()
	// 20 workers finished; at most 3 may stay waiting.
	waitGoroutines(t, base+3)
	p.Close()
	waitGoroutines(t, base)
}

func TestCloseWaitsForRunningJobs(t *testing.T) {
	p := New(2)
	started, release := make(chan struct{}), make(chan struct{})
	finished := false
	p.Go(func() {
		close(started)
		<-release
		finished = true
	})
	<-started
	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a job was running")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return after the job ended")
	}
	if !finished {
		t.Fatal("Close returned before the job finished")
	}
}

func TestGoAfterClose(t *testing.T) {
	p := New(2)
	p.Close()
	p.Close() // twice is fine
	done := make(chan struct{})
	p.Go(func() { close(done) })
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a job given after Close never ran")
	}
}
