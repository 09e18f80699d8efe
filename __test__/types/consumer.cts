// A TypeScript CommonJS consumer: `import = require()` compiles to require('rxdb-nats-native').
import rxdbNatsNative = require('rxdb-nats-native');
import type { RxCollection } from 'rxdb';

type Todo = { id: string; done: boolean };

export function replicateTodos(collection: RxCollection<Todo>) {
  const state = rxdbNatsNative.replicateNats({
    collection,
    replicationIdentifier: 'todos',
    streamName: 'todos',
    subjectPrefix: 'app.todos',
    pull: {},
    push: {},
  });
  state.received$.subscribe((todo) => {
    const done: boolean = todo.done;
    // @ts-expect-error Todo has no title
    todo.title;
    void done;
  });
  // @ts-expect-error live must be a boolean
  rxdbNatsNative.replicateNats({ collection, replicationIdentifier: 'x', streamName: 's', subjectPrefix: 'p', live: 'yes' });
  return state;
}
