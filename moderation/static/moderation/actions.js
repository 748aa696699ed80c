// What a moderator can do from the console: each action's button label, its
// API path, how the form names what it is about to do and the words for its
// outcome, and which actions a comment's status offers. The feed draws the
// buttons from this, the action form sends and reports from it.
import {clock} from "./format.js";

// comment: the answer is the comment's new state (the feed takes it at once).
// duration, scope: the form asks for them. danger: the button says so.
export const ACTIONS = {
  hide: {label: "Hide", what: (c) => `Hide comment #${c.id} by ${c.username}`, path: (c) => `/danmaku/${c.id}/hide`,
    done: (c) => `Hidden #${c.id} by ${c.username}.`, comment: true},
  unhide: {label: "Unhide", what: (c) => `Unhide comment #${c.id} by ${c.username}`,
    path: (c) => `/danmaku/${c.id}/unhide`, done: (c) => `Unhidden #${c.id}.`, comment: true},
  approve: {label: "Approve", what: (c) => `Approve held comment #${c.id} by ${c.username}`,
    path: (c) => `/held/${c.id}/approve`, done: (c) => `Approved #${c.id}: it is on screens now.`, comment: true},
  reject: {label: "Reject", what: (c) => `Reject held comment #${c.id} by ${c.username}`,
    path: (c) => `/held/${c.id}/reject`, done: (c) => `Rejected #${c.id}.`, comment: true},
  timeout: {label: "Time out", what: (c) => `Time out ${c.username}`, path: (c) => `/users/${c.user_id}/timeout`,
    done: (c, s) => `${c.username} timed out ${s.room ? "in this room" : "everywhere"} until ${clock(Date.parse(s.until))}.`,
    duration: true, scope: true, danger: true},
  ban: {label: "Ban", what: (c) => `Ban ${c.username}`, path: (c) => `/users/${c.user_id}/ban`,
    done: (c, s) => `${c.username} banned ${s.room ? "from this room" : "everywhere"}.`, scope: true, danger: true},
  // event: the action has a form of its own (pin.js); the feed announces it
  // on the table as this event, with {comment, opener}, instead.
  pin: {label: "Pin", event: "pin-comment"},
};

// What can still be done to a comment in each status; a status the console
// does not know offers only the actions on its author.
const BY_STATUS = {
  published: ["hide", "pin"], sender_only: ["hide"], held: ["approve", "reject"], hidden: ["unhide"],
};
// Every comment's author can be timed out or banned, whatever the comment's status.
const ON_AUTHOR = ["timeout", "ban"];

export function actionsFor(status) {
  return [...(BY_STATUS[status] || []), ...ON_AUTHOR];
}
