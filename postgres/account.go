package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/wagglechat/waggle/services/account"
)

// AccountStore is account.Store over the users and devices tables.
type AccountStore struct{ pool *pgxpool.Pool }

var _ account.Store = (*AccountStore)(nil)

// NewAccountStore returns the account store on pool.
func NewAccountStore(pool *pgxpool.Pool) *AccountStore { return &AccountStore{pool: pool} }

const userColumns = `id, username, display_name, create_time`

func userFields(u *account.User) []any {
	return []any{&u.ID, &u.Username, &u.DisplayName, &u.CreateTime}
}

// scanUser scans one user row; no row is account.ErrNotFound.
func scanUser(row pgx.Row, op string, extra ...any) (account.User, error) {
	var u account.User
	err := row.Scan(append(userFields(&u), extra...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return account.User{}, account.ErrNotFound
	}
	if err != nil {
		return account.User{}, fmt.Errorf("%s: %w", op, err)
	}
	return u, nil
}

func (s *AccountStore) CreateUser(ctx context.Context, u account.User, passwordHash string, first account.Device) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			INSERT INTO users (id, username, display_name, password_hash, create_time)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (username) DO NOTHING`,
			u.ID, u.Username, u.DisplayName, passwordHash, u.CreateTime)
		if err != nil {
			return fmt.Errorf("insert user: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return account.ErrUsernameTaken
		}
		return addDevice(ctx, tx, first)
	})
}

func (s *AccountStore) UserByName(ctx context.Context, username string) (account.User, string, error) {
	var hash string
	u, err := scanUser(s.pool.QueryRow(ctx, `SELECT `+userColumns+`, password_hash FROM users WHERE username = $1`, username),
		"find user by name", &hash)
	return u, hash, err
}

func (s *AccountStore) User(ctx context.Context, id uuid.UUID) (account.User, error) {
	return scanUser(s.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id), "get user")
}

func (s *AccountStore) Users(ctx context.Context, ids []uuid.UUID) ([]account.User, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+userColumns+` FROM users WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("get users: %w", err)
	}
	users, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (account.User, error) {
		var u account.User
		return u, r.Scan(userFields(&u)...)
	})
	if err != nil {
		return nil, fmt.Errorf("get users: %w", err)
	}
	return users, nil
}

func (s *AccountStore) SetDisplayName(ctx context.Context, id uuid.UUID, name string) (account.User, error) {
	return scanUser(s.pool.QueryRow(ctx, `UPDATE users SET display_name = $2 WHERE id = $1 RETURNING `+userColumns, id, name),
		"set display name")
}

func (s *AccountStore) AddDevice(ctx context.Context, d account.Device) error {
	return addDevice(ctx, s.pool, d)
}

// execer is a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func addDevice(ctx context.Context, db execer, d account.Device) error {
	_, err := db.Exec(ctx, `
		INSERT INTO devices (id, user_id, name, refresh_hash, refresh_expire_time, create_time)
		VALUES ($1, $2, $3, $4, $5, $6)`,
		d.ID, d.UserID, d.Name, d.RefreshHash, d.RefreshExpireTime, d.CreateTime)
	if err != nil {
		return fmt.Errorf("insert device: %w", err)
	}
	return nil
}

// RotateRefresh reads the device under its row lock (FOR UPDATE) and
// writes its new token in the same transaction: a concurrent rotation of
// the same token waits for the lock, then finds the hash gone.
func (s *AccountStore) RotateRefresh(ctx context.Context, hash []byte, rotate func(account.Device) (account.Refresh, error)) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		d := account.Device{RefreshHash: hash}
		var lastRefresh, revoked *time.Time
		err := tx.QueryRow(ctx, `
			SELECT id, user_id, name, refresh_expire_time, create_time, last_refresh_time, revoke_time FROM devices
			WHERE refresh_hash = $1 FOR UPDATE`, hash).
			Scan(&d.ID, &d.UserID, &d.Name, &d.RefreshExpireTime, &d.CreateTime, &lastRefresh, &revoked)
		if errors.Is(err, pgx.ErrNoRows) {
			return account.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("find device: %w", err)
		}
		d.LastRefreshTime, d.RevokeTime = orZero(lastRefresh), orZero(revoked)
		next, err := rotate(d)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			UPDATE devices SET refresh_hash = $2, refresh_expire_time = $3, last_refresh_time = $4
			WHERE id = $1`,
			d.ID, next.Hash, next.ExpireTime, next.Time)
		if err != nil {
			return fmt.Errorf("rotate refresh token: %w", err)
		}
		return nil
	})
}

func (s *AccountStore) RevokeDevice(ctx context.Context, user, device uuid.UUID, at time.Time) error {
	_, err := s.pool.Exec(ctx, `
		UPDATE devices SET revoke_time = $3
		WHERE id = $1 AND user_id = $2 AND revoke_time IS NULL`,
		device, user, at)
	if err != nil {
		return fmt.Errorf("revoke device: %w", err)
	}
	return nil
}

func (s *AccountStore) LiveDevices(ctx context.Context, user uuid.UUID, now time.Time) ([]account.Device, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id, name, refresh_expire_time, create_time, last_refresh_time FROM devices
		WHERE user_id = $1 AND revoke_time IS NULL AND refresh_expire_time > $2
		ORDER BY create_time, id`,
		user, now)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	devices, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (account.Device, error) {
		d := account.Device{UserID: user}
		var lastRefresh *time.Time
		err := r.Scan(&d.ID, &d.Name, &d.RefreshExpireTime, &d.CreateTime, &lastRefresh)
		d.LastRefreshTime = orZero(lastRefresh)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	return devices, nil
}

// orZero is a nullable timestamp as the zero time for NULL.
func orZero(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}
