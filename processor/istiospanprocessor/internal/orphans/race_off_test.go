//go:build !race

package orphans

const raceEnabled = false
