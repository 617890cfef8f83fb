/**
 * Who is online, counted per connection across every node. A user is online while any of
 * their sockets, on any node, is connected.
 */
export interface PresenceTracker {
  /** Records a connection; true when it made the user go from offline to online. */
  connected(userId: string, connectionId: string): Promise<boolean>;
  /** Forgets a connection; true when it was the user's last one. */
  disconnected(userId: string, connectionId: string): Promise<boolean>;
  online(userIds: string[]): Promise<Set<string>>;
  /**
   * Called every few seconds: keeps this node's connections alive for the other nodes.
   * Returns users who had wrongly been reaped (a stalled node) and are online again.
   */
  refresh(): Promise<string[]>;
  /** Forgets connections whose node stopped refreshing them; returns users now offline. */
  reap(): Promise<string[]>;
  close(): Promise<void>;
}
