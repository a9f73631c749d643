package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/wagglechat/waggle/services/account"
)

// AccountStore is account.Store over the users and devices tables.
type AccountStore struct{ db *DB }

var _ account.Store = (*AccountStore)(nil)

// NewAccountStore returns the account store on db.
func NewAccountStore(db *DB) *AccountStore { return &AccountStore{db: db} }

const userColumns = `id, username, display_name, create_time`

func userFields(u *account.User) []any {
	return []any{&u.ID, &u.Username, &u.DisplayName, scanTime(&u.CreateTime)}
}

// scanUser scans one user row; no row is account.ErrNotFound.
func scanUser(row *sql.Row, op string, extra ...any) (account.User, error) {
	var u account.User
	err := row.Scan(append(userFields(&u), extra...)...)
	if errors.Is(err, sql.ErrNoRows) {
		return account.User{}, account.ErrNotFound
	}
	if err != nil {
		return account.User{}, fmt.Errorf("%s: %w", op, err)
	}
	return u, nil
}

func (s *AccountStore) CreateUser(ctx context.Context, u account.User, passwordHash string, first account.Device) error {
	return s.db.Write(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `
			INSERT INTO users (id, username, display_name, password_hash, create_time)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (username) DO NOTHING`,
			u.ID, u.Username, u.DisplayName, passwordHash, micros(u.CreateTime))
		if err != nil {
			return fmt.Errorf("insert user: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("insert user: %w", err)
		} else if n == 0 {
			return account.ErrUsernameTaken
		}
		return addDevice(ctx, tx, first)
	})
}

func (s *AccountStore) UserByName(ctx context.Context, username string) (u account.User, hash string, err error) {
	err = s.db.Read(ctx, func(tx *sql.Tx) error {
		u, err = scanUser(tx.QueryRowContext(ctx, `SELECT `+userColumns+`, password_hash FROM users WHERE username = ?`, username),
			"find user by name", &hash)
		return err
	})
	return u, hash, err
}

func (s *AccountStore) User(ctx context.Context, id uuid.UUID) (u account.User, err error) {
	err = s.db.Read(ctx, func(tx *sql.Tx) error {
		u, err = scanUser(tx.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = ?`, id), "get user")
		return err
	})
	return u, err
}

func (s *AccountStore) Users(ctx context.Context, ids []uuid.UUID) ([]account.User, error) {
	// One parameter however many ids: a JSON array of their strings.
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, fmt.Errorf("get users: %w", err)
	}
	var users []account.User
	err = s.db.Read(ctx, func(tx *sql.Tx) (err error) {
		users, err = queryAll(ctx, tx, func(r *sql.Rows) (account.User, error) {
			var u account.User
			err := r.Scan(userFields(&u)...)
			return u, err
		}, `SELECT `+userColumns+` FROM users WHERE id IN (SELECT value FROM json_each(?))`, string(list))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get users: %w", err)
	}
	return users, nil
}

func (s *AccountStore) SetDisplayName(ctx context.Context, id uuid.UUID, name string) (u account.User, err error) {
	err = s.db.Write(ctx, func(tx *Tx) error {
		u, err = scanUser(tx.QueryRowContext(ctx, `UPDATE users SET display_name = ? WHERE id = ? RETURNING `+userColumns, name, id),
			"set display name")
		return err
	})
	return u, err
}

func (s *AccountStore) AddDevice(ctx context.Context, d account.Device) error {
	return s.db.Write(ctx, func(tx *Tx) error { return addDevice(ctx, tx, d) })
}

func addDevice(ctx context.Context, tx *Tx, d account.Device) error {
	_, err := tx.ExecContext(ctx, `
		INSERT INTO devices (id, user_id, name, refresh_hash, refresh_expire_time, create_time)
		VALUES (?, ?, ?, ?, ?, ?)`,
		d.ID, d.UserID, d.Name, d.RefreshHash, micros(d.RefreshExpireTime), micros(d.CreateTime))
	if err != nil {
		return fmt.Errorf("insert device: %w", err)
	}
	return nil
}

// RotateRefresh reads and rewrites the device in one write transaction.
// Write transactions run one at a time, so a concurrent rotation of the same
// token runs after this one and finds the hash gone.
func (s *AccountStore) RotateRefresh(ctx context.Context, hash []byte, rotate func(account.Device) (account.Refresh, error)) error {
	return s.db.Write(ctx, func(tx *Tx) error {
		d := account.Device{RefreshHash: hash}
		err := tx.QueryRowContext(ctx, `
			SELECT id, user_id, name, refresh_expire_time, create_time, last_refresh_time, revoke_time FROM devices
			WHERE refresh_hash = ?`, hash).
			Scan(&d.ID, &d.UserID, &d.Name, scanTime(&d.RefreshExpireTime), scanTime(&d.CreateTime),
				scanTime(&d.LastRefreshTime), scanTime(&d.RevokeTime))
		if errors.Is(err, sql.ErrNoRows) {
			return account.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("find device: %w", err)
		}
		next, err := rotate(d)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `
			UPDATE devices SET refresh_hash = ?, refresh_expire_time = ?, last_refresh_time = ?
			WHERE id = ?`,
			next.Hash, micros(next.ExpireTime), micros(next.Time), d.ID)
		if err != nil {
			return fmt.Errorf("rotate refresh token: %w", err)
		}
		return nil
	})
}

func (s *AccountStore) RevokeDevice(ctx context.Context, user, device uuid.UUID, at time.Time) error {
	err := s.db.Write(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `
			UPDATE devices SET revoke_time = ?
			WHERE id = ? AND user_id = ? AND revoke_time IS NULL`,
			micros(at), device, user)
		return err
	})
	if err != nil {
		return fmt.Errorf("revoke device: %w", err)
	}
	return nil
}

func (s *AccountStore) LiveDevices(ctx context.Context, user uuid.UUID, now time.Time) ([]account.Device, error) {
	var devices []account.Device
	err := s.db.Read(ctx, func(tx *sql.Tx) (err error) {
		devices, err = queryAll(ctx, tx, func(r *sql.Rows) (account.Device, error) {
			d := account.Device{UserID: user}
			err := r.Scan(&d.ID, &d.Name, scanTime(&d.RefreshExpireTime), scanTime(&d.CreateTime), scanTime(&d.LastRefreshTime))
			return d, err
		}, `
			SELECT id, name, refresh_expire_time, create_time, last_refresh_time FROM devices
			WHERE user_id = ? AND revoke_time IS NULL AND refresh_expire_time > ?
			ORDER BY create_time, id`,
			user, now.UnixMicro())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	return devices, nil
}
