package tpmtoken

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// everyAtMost asks once per period and answers the last answer between:
// within an hour, one question however many calls; with no period, every
// call asks.
func TestEveryAtMost(t *testing.T) {
	asked, answer := 0, true
	f := func() bool { asked++; return answer }
	hourly := everyAtMost(time.Hour, f)
	for i := 0; i < 10; i++ {
		require.True(t, hourly())
		answer = false // not seen within the hour
	}
	require.Equal(t, 1, asked)

	asked = 0
	always := everyAtMost(0, f)
	for i := 0; i < 5; i++ {
		require.False(t, always())
	}
	require.Equal(t, 5, asked)
}
